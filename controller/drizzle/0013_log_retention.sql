CREATE TABLE "log_chunk_summaries" (
	"host_id" uuid NOT NULL,
	"first_seq" bigint NOT NULL,
	"summary" jsonb NOT NULL,
	CONSTRAINT "log_chunk_summaries_pk" PRIMARY KEY("host_id","first_seq")
);
--> statement-breakpoint
CREATE TABLE "process_log_retention" (
	"host_id" uuid NOT NULL,
	"process" text NOT NULL,
	"max_age_days" integer,
	"max_bytes" bigint,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "process_log_retention_pk" PRIMARY KEY("host_id","process")
);
--> statement-breakpoint
ALTER TABLE "log_chunk_summaries" ADD CONSTRAINT "log_chunk_summaries_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "process_log_retention" ADD CONSTRAINT "process_log_retention_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;