CREATE TABLE "proxy_traffic" (
	"host_id" uuid NOT NULL,
	"instance" text NOT NULL,
	"counter_epoch" text NOT NULL,
	"counters" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"scraped_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "proxy_traffic_host_id_instance_pk" PRIMARY KEY("host_id","instance")
);
--> statement-breakpoint
CREATE TABLE "proxy_user_node_usage" (
	"host_id" uuid NOT NULL,
	"instance" text NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"up_bytes" bigint DEFAULT 0 NOT NULL,
	"down_bytes" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "proxy_user_node_usage_host_id_instance_hour_pk" PRIMARY KEY("host_id","instance","hour")
);
--> statement-breakpoint
CREATE TABLE "proxy_user_nodes" (
	"user_id" uuid NOT NULL,
	"host_id" uuid NOT NULL,
	"instance" text NOT NULL,
	"inbounds" jsonb,
	"port" integer,
	CONSTRAINT "proxy_user_nodes_user_id_host_id_instance_pk" PRIMARY KEY("user_id","host_id","instance")
);
--> statement-breakpoint
CREATE TABLE "proxy_user_usage" (
	"user_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"up_bytes" bigint DEFAULT 0 NOT NULL,
	"down_bytes" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "proxy_user_usage_user_id_hour_pk" PRIMARY KEY("user_id","hour")
);
--> statement-breakpoint
CREATE TABLE "proxy_users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"owner_id" uuid,
	"status" text DEFAULT 'active' NOT NULL,
	"secret" text NOT NULL,
	"uuid" uuid NOT NULL,
	"password" text NOT NULL,
	"data_limit_bytes" bigint,
	"reset_period" text DEFAULT 'none' NOT NULL,
	"last_reset_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"max_connections" integer,
	"max_unique_ips" integer,
	"note" text DEFAULT '' NOT NULL,
	"subscription_token" text NOT NULL,
	"used_up_bytes" bigint DEFAULT 0 NOT NULL,
	"used_down_bytes" bigint DEFAULT 0 NOT NULL,
	"lifetime_bytes" bigint DEFAULT 0 NOT NULL,
	"last_seen_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "proxy_users_name_unique" UNIQUE("name"),
	CONSTRAINT "proxy_users_subscription_token_unique" UNIQUE("subscription_token")
);
--> statement-breakpoint
ALTER TABLE "proxy_traffic" ADD CONSTRAINT "proxy_traffic_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "proxy_user_node_usage" ADD CONSTRAINT "proxy_user_node_usage_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "proxy_user_nodes" ADD CONSTRAINT "proxy_user_nodes_user_id_proxy_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."proxy_users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "proxy_user_nodes" ADD CONSTRAINT "proxy_user_nodes_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "proxy_user_usage" ADD CONSTRAINT "proxy_user_usage_user_id_proxy_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."proxy_users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "proxy_users" ADD CONSTRAINT "proxy_users_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "proxy_user_nodes_node" ON "proxy_user_nodes" USING btree ("host_id","instance");--> statement-breakpoint
CREATE INDEX "proxy_users_owner" ON "proxy_users" USING btree ("owner_id","name");--> statement-breakpoint
CREATE INDEX "proxy_users_status" ON "proxy_users" USING btree ("status");