CREATE TABLE "metric_settings" (
	"host_id" uuid PRIMARY KEY NOT NULL,
	"interval_seconds" smallint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "metric_rollups_1h" ADD COLUMN "processes" jsonb;--> statement-breakpoint
ALTER TABLE "metric_rollups_1m" ADD COLUMN "processes" jsonb;--> statement-breakpoint
ALTER TABLE "metric_settings" ADD CONSTRAINT "metric_settings_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;