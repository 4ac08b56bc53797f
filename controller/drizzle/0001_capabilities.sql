CREATE TABLE "grants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"group_id" uuid NOT NULL,
	"role" "user_role" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "grants_user_group_unique" UNIQUE("user_id","group_id")
);
--> statement-breakpoint
CREATE TABLE "host_group_members" (
	"group_id" uuid NOT NULL,
	"host_id" uuid NOT NULL,
	CONSTRAINT "host_group_members_group_id_host_id_pk" PRIMARY KEY("group_id","host_id")
);
--> statement-breakpoint
CREATE TABLE "host_groups" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"tags" text[] DEFAULT '{}' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "host_groups_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "host_tags" (
	"host_id" uuid NOT NULL,
	"tag" text NOT NULL,
	CONSTRAINT "host_tags_host_id_tag_pk" PRIMARY KEY("host_id","tag")
);
--> statement-breakpoint
CREATE TABLE "metric_rollups_1h" (
	"host_id" uuid NOT NULL,
	"ts" timestamp with time zone NOT NULL,
	"n" integer NOT NULL,
	"cpu" real,
	"cpu_min" real,
	"cpu_max" real,
	"cpu_user" real,
	"cpu_user_min" real,
	"cpu_user_max" real,
	"cpu_system" real,
	"cpu_system_min" real,
	"cpu_system_max" real,
	"cpu_iowait" real,
	"cpu_iowait_min" real,
	"cpu_iowait_max" real,
	"cpu_steal" real,
	"cpu_steal_min" real,
	"cpu_steal_max" real,
	"load1" real,
	"load1_min" real,
	"load1_max" real,
	"load5" real,
	"load5_min" real,
	"load5_max" real,
	"load15" real,
	"load15_min" real,
	"load15_max" real,
	"mem_total" real,
	"mem_total_min" real,
	"mem_total_max" real,
	"mem_used" real,
	"mem_used_min" real,
	"mem_used_max" real,
	"mem_available" real,
	"mem_available_min" real,
	"mem_available_max" real,
	"mem_cached" real,
	"mem_cached_min" real,
	"mem_cached_max" real,
	"swap_total" real,
	"swap_total_min" real,
	"swap_total_max" real,
	"swap_used" real,
	"swap_used_min" real,
	"swap_used_max" real,
	"disk_total" real,
	"disk_total_min" real,
	"disk_total_max" real,
	"disk_used" real,
	"disk_used_min" real,
	"disk_used_max" real,
	"disk_used_max_pct" real,
	"disk_used_max_pct_min" real,
	"disk_used_max_pct_max" real,
	"disk_read_bps" real,
	"disk_read_bps_min" real,
	"disk_read_bps_max" real,
	"disk_write_bps" real,
	"disk_write_bps_min" real,
	"disk_write_bps_max" real,
	"net_rx_bps" real,
	"net_rx_bps_min" real,
	"net_rx_bps_max" real,
	"net_tx_bps" real,
	"net_tx_bps_min" real,
	"net_tx_bps_max" real,
	"tcp_conns" real,
	"tcp_conns_min" real,
	"tcp_conns_max" real,
	"udp_conns" real,
	"udp_conns_min" real,
	"udp_conns_max" real,
	"procs" real,
	"procs_min" real,
	"procs_max" real,
	"uptime" real,
	"uptime_min" real,
	"uptime_max" real,
	"temp_max" real,
	"temp_max_min" real,
	"temp_max_max" real,
	"agent_cpu" real,
	"agent_cpu_min" real,
	"agent_cpu_max" real,
	"agent_rss" real,
	"agent_rss_min" real,
	"agent_rss_max" real,
	CONSTRAINT "metric_rollups_1h_pk" PRIMARY KEY("host_id","ts")
);
--> statement-breakpoint
CREATE TABLE "metric_rollups_1m" (
	"host_id" uuid NOT NULL,
	"ts" timestamp with time zone NOT NULL,
	"n" integer NOT NULL,
	"cpu" real,
	"cpu_min" real,
	"cpu_max" real,
	"cpu_user" real,
	"cpu_user_min" real,
	"cpu_user_max" real,
	"cpu_system" real,
	"cpu_system_min" real,
	"cpu_system_max" real,
	"cpu_iowait" real,
	"cpu_iowait_min" real,
	"cpu_iowait_max" real,
	"cpu_steal" real,
	"cpu_steal_min" real,
	"cpu_steal_max" real,
	"load1" real,
	"load1_min" real,
	"load1_max" real,
	"load5" real,
	"load5_min" real,
	"load5_max" real,
	"load15" real,
	"load15_min" real,
	"load15_max" real,
	"mem_total" real,
	"mem_total_min" real,
	"mem_total_max" real,
	"mem_used" real,
	"mem_used_min" real,
	"mem_used_max" real,
	"mem_available" real,
	"mem_available_min" real,
	"mem_available_max" real,
	"mem_cached" real,
	"mem_cached_min" real,
	"mem_cached_max" real,
	"swap_total" real,
	"swap_total_min" real,
	"swap_total_max" real,
	"swap_used" real,
	"swap_used_min" real,
	"swap_used_max" real,
	"disk_total" real,
	"disk_total_min" real,
	"disk_total_max" real,
	"disk_used" real,
	"disk_used_min" real,
	"disk_used_max" real,
	"disk_used_max_pct" real,
	"disk_used_max_pct_min" real,
	"disk_used_max_pct_max" real,
	"disk_read_bps" real,
	"disk_read_bps_min" real,
	"disk_read_bps_max" real,
	"disk_write_bps" real,
	"disk_write_bps_min" real,
	"disk_write_bps_max" real,
	"net_rx_bps" real,
	"net_rx_bps_min" real,
	"net_rx_bps_max" real,
	"net_tx_bps" real,
	"net_tx_bps_min" real,
	"net_tx_bps_max" real,
	"tcp_conns" real,
	"tcp_conns_min" real,
	"tcp_conns_max" real,
	"udp_conns" real,
	"udp_conns_min" real,
	"udp_conns_max" real,
	"procs" real,
	"procs_min" real,
	"procs_max" real,
	"uptime" real,
	"uptime_min" real,
	"uptime_max" real,
	"temp_max" real,
	"temp_max_min" real,
	"temp_max_max" real,
	"agent_cpu" real,
	"agent_cpu_min" real,
	"agent_cpu_max" real,
	"agent_rss" real,
	"agent_rss_min" real,
	"agent_rss_max" real,
	CONSTRAINT "metric_rollups_1m_pk" PRIMARY KEY("host_id","ts")
);
--> statement-breakpoint
CREATE TABLE "metric_samples" (
	"host_id" uuid NOT NULL,
	"ts" timestamp (3) with time zone NOT NULL,
	"cpu" real,
	"cpu_user" real,
	"cpu_system" real,
	"cpu_iowait" real,
	"cpu_steal" real,
	"load1" real,
	"load5" real,
	"load15" real,
	"mem_total" real,
	"mem_used" real,
	"mem_available" real,
	"mem_cached" real,
	"swap_total" real,
	"swap_used" real,
	"disk_total" real,
	"disk_used" real,
	"disk_used_max_pct" real,
	"disk_read_bps" real,
	"disk_write_bps" real,
	"net_rx_bps" real,
	"net_tx_bps" real,
	"tcp_conns" real,
	"udp_conns" real,
	"procs" real,
	"uptime" real,
	"temp_max" real,
	"agent_cpu" real,
	"agent_rss" real,
	"detail" jsonb,
	CONSTRAINT "metric_samples_pk" PRIMARY KEY("host_id","ts")
);
--> statement-breakpoint
CREATE TABLE "process_definitions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"host_id" uuid NOT NULL,
	"name" text NOT NULL,
	"spec" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "process_definitions_host_name" UNIQUE("host_id","name")
);
--> statement-breakpoint
CREATE TABLE "recordings" (
	"id" uuid PRIMARY KEY NOT NULL,
	"host_id" uuid NOT NULL,
	"user_id" uuid,
	"kind" text NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"exit_code" integer,
	"end_reason" text,
	"cols" integer NOT NULL,
	"rows" integer NOT NULL,
	"output_bytes" bigint DEFAULT 0 NOT NULL,
	"input_recorded" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE TABLE "api_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"name" text NOT NULL,
	"secret_hash" text NOT NULL,
	"permissions" text[] NOT NULL,
	"group_ids" uuid[],
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	"last_used_ip" text,
	CONSTRAINT "api_tokens_secret_hash_unique" UNIQUE("secret_hash")
);
--> statement-breakpoint
CREATE TABLE "access_settings" (
	"id" integer PRIMARY KEY NOT NULL,
	"two_factor_roles" text[] DEFAULT '{}' NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "recovery_codes" (
	"user_id" uuid NOT NULL,
	"code_hash" text NOT NULL,
	"used_at" timestamp with time zone,
	CONSTRAINT "recovery_codes_user_id_code_hash_pk" PRIMARY KEY("user_id","code_hash")
);
--> statement-breakpoint
ALTER TABLE "stream_cursors" ADD COLUMN "seq_base" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "stream_gaps" ADD COLUMN "reason" text DEFAULT 'lost' NOT NULL;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "verified" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "scoped" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "totp_secret" text;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "totp_enabled_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "totp_last_step" integer;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "password_changed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_group_id_host_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."host_groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "host_group_members" ADD CONSTRAINT "host_group_members_group_id_host_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."host_groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "host_group_members" ADD CONSTRAINT "host_group_members_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "host_tags" ADD CONSTRAINT "host_tags_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "metric_rollups_1h" ADD CONSTRAINT "metric_rollups_1h_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "metric_rollups_1m" ADD CONSTRAINT "metric_rollups_1m_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "metric_samples" ADD CONSTRAINT "metric_samples_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "process_definitions" ADD CONSTRAINT "process_definitions_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "recordings" ADD CONSTRAINT "recordings_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "recordings" ADD CONSTRAINT "recordings_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "recovery_codes" ADD CONSTRAINT "recovery_codes_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "host_group_members_host_idx" ON "host_group_members" USING btree ("host_id");--> statement-breakpoint
CREATE INDEX "host_tags_tag_idx" ON "host_tags" USING btree ("tag");--> statement-breakpoint
CREATE INDEX "metric_rollups_1h_ts" ON "metric_rollups_1h" USING btree ("ts");--> statement-breakpoint
CREATE INDEX "metric_rollups_1m_ts" ON "metric_rollups_1m" USING btree ("ts");--> statement-breakpoint
CREATE INDEX "recordings_host_started" ON "recordings" USING btree ("host_id","started_at");--> statement-breakpoint
CREATE INDEX "recordings_started" ON "recordings" USING btree ("started_at");--> statement-breakpoint
CREATE INDEX "api_tokens_user_idx" ON "api_tokens" USING btree ("user_id");