CREATE TABLE "job_run_hosts" (
	"run_id" uuid NOT NULL,
	"host_id" uuid NOT NULL,
	"host_name" text NOT NULL,
	"status" text NOT NULL,
	"exit_code" integer,
	"error" text,
	"started_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"duration_ms" integer,
	"stdout" "bytea",
	"stderr" "bytea",
	"stdout_bytes" bigint DEFAULT 0 NOT NULL,
	"stderr_bytes" bigint DEFAULT 0 NOT NULL,
	"stdout_truncated" boolean DEFAULT false NOT NULL,
	"stderr_truncated" boolean DEFAULT false NOT NULL,
	CONSTRAINT "job_run_hosts_run_id_host_id_pk" PRIMARY KEY("run_id","host_id")
);
--> statement-breakpoint
CREATE TABLE "job_runs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"schedule_id" uuid,
	"scheduled_for" timestamp (3) with time zone,
	"trigger" text NOT NULL,
	"user_id" uuid,
	"command" jsonb NOT NULL,
	"target" jsonb NOT NULL,
	"concurrency" integer NOT NULL,
	"timeout_seconds" integer NOT NULL,
	"max_output_bytes" integer NOT NULL,
	"status" text NOT NULL,
	"note" text,
	"host_count" integer DEFAULT 0 NOT NULL,
	"failed_count" integer DEFAULT 0 NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"heartbeat_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "job_schedules" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"command" jsonb NOT NULL,
	"target" jsonb NOT NULL,
	"concurrency" integer NOT NULL,
	"timeout_seconds" integer NOT NULL,
	"cron" text NOT NULL,
	"timezone" text NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"next_run_at" timestamp (3) with time zone,
	"owner_id" uuid,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "job_run_hosts" ADD CONSTRAINT "job_run_hosts_run_id_job_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."job_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_run_hosts" ADD CONSTRAINT "job_run_hosts_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_runs" ADD CONSTRAINT "job_runs_schedule_id_job_schedules_id_fk" FOREIGN KEY ("schedule_id") REFERENCES "public"."job_schedules"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_runs" ADD CONSTRAINT "job_runs_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_schedules" ADD CONSTRAINT "job_schedules_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "job_runs_schedule_slot" ON "job_runs" USING btree ("schedule_id","scheduled_for");--> statement-breakpoint
CREATE INDEX "job_runs_started" ON "job_runs" USING btree ("started_at");--> statement-breakpoint
CREATE INDEX "job_runs_schedule_started" ON "job_runs" USING btree ("schedule_id","started_at");--> statement-breakpoint
CREATE INDEX "job_runs_status" ON "job_runs" USING btree ("status");--> statement-breakpoint
CREATE INDEX "job_schedules_due" ON "job_schedules" USING btree ("enabled","next_run_at");