CREATE TABLE "config_generations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"host_id" uuid NOT NULL,
	"instance" text NOT NULL,
	"generation" integer NOT NULL,
	"adapter" text NOT NULL,
	"settings" jsonb NOT NULL,
	"user_ids" jsonb NOT NULL,
	"files" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"origin" text NOT NULL,
	"rollback_of" integer,
	"actor" text NOT NULL,
	"reason" text,
	"outcome" text DEFAULT 'pending' NOT NULL,
	"method" text,
	"error_code" text,
	"error_message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "config_generations_host_instance_generation" UNIQUE("host_id","instance","generation")
);
--> statement-breakpoint
CREATE TABLE "config_rollout_steps" (
	"rollout_id" uuid NOT NULL,
	"position" integer NOT NULL,
	"stage" integer NOT NULL,
	"host_id" uuid NOT NULL,
	"instance" text NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"generation" integer,
	"error_code" text,
	"error_message" text,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	CONSTRAINT "config_rollout_steps_rollout_id_position_pk" PRIMARY KEY("rollout_id","position")
);
--> statement-breakpoint
CREATE TABLE "config_rollouts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"adapter" text,
	"settings" jsonb,
	"canary" integer NOT NULL,
	"batch_size" integer NOT NULL,
	"state" text NOT NULL,
	"halt_reason" text,
	"actor" text NOT NULL,
	"reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "proxy_nodes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"host_id" uuid NOT NULL,
	"instance" text NOT NULL,
	"adapter" text NOT NULL,
	"settings" jsonb NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"current_generation" integer,
	"last_generation" integer DEFAULT 0 NOT NULL,
	"drift" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "proxy_nodes_host_instance" UNIQUE("host_id","instance")
);
--> statement-breakpoint
ALTER TABLE "config_generations" ADD CONSTRAINT "config_generations_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "config_rollout_steps" ADD CONSTRAINT "config_rollout_steps_rollout_id_config_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."config_rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "config_rollout_steps" ADD CONSTRAINT "config_rollout_steps_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "proxy_nodes" ADD CONSTRAINT "proxy_nodes_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "config_rollout_steps_host" ON "config_rollout_steps" USING btree ("host_id");