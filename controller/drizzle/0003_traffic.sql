CREATE TABLE "traffic_counters" (
	"host_id" uuid NOT NULL,
	"iface" text NOT NULL,
	"ts" timestamp (3) with time zone NOT NULL,
	"rx_bytes" bigint NOT NULL,
	"tx_bytes" bigint NOT NULL,
	"uptime" real,
	CONSTRAINT "traffic_counters_pk" PRIMARY KEY("host_id","iface")
);
--> statement-breakpoint
CREATE TABLE "traffic_daily" (
	"host_id" uuid NOT NULL,
	"iface" text NOT NULL,
	"day" date NOT NULL,
	"rx_bytes" bigint NOT NULL,
	"tx_bytes" bigint NOT NULL,
	CONSTRAINT "traffic_daily_pk" PRIMARY KEY("host_id","iface","day")
);
--> statement-breakpoint
CREATE TABLE "traffic_plans" (
	"host_id" uuid PRIMARY KEY NOT NULL,
	"reset_day" smallint NOT NULL,
	"quota_bytes" bigint,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "traffic_counters" ADD CONSTRAINT "traffic_counters_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "traffic_daily" ADD CONSTRAINT "traffic_daily_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "traffic_plans" ADD CONSTRAINT "traffic_plans_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;