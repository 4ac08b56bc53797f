CREATE TABLE "agent_rollout_hosts" (
	"rollout_id" uuid NOT NULL,
	"host_id" uuid NOT NULL,
	"position" integer NOT NULL,
	"state" text NOT NULL,
	"from_version" text,
	"reason" text,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	CONSTRAINT "agent_rollout_hosts_rollout_id_host_id_pk" PRIMARY KEY("rollout_id","host_id")
);
--> statement-breakpoint
CREATE TABLE "agent_rollouts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"version" text NOT NULL,
	"sha256" text NOT NULL,
	"size" integer NOT NULL,
	"state" text NOT NULL,
	"canary" integer NOT NULL,
	"batch_size" integer NOT NULL,
	"confirm_seconds" integer NOT NULL,
	"reason" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "agent_rollout_hosts" ADD CONSTRAINT "agent_rollout_hosts_rollout_id_agent_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."agent_rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agent_rollout_hosts" ADD CONSTRAINT "agent_rollout_hosts_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "agent_rollout_hosts_host" ON "agent_rollout_hosts" USING btree ("host_id");