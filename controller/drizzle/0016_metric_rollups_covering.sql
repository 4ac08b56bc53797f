-- A chart reads one host's roll-ups over a range: the 30-day chart ~720 hourly rows, a week ~10,080
-- minute rows. The roll-up job writes them time by time across every host, so one host's rows lie
-- one per heap page. The key's index now also holds every series' average (INCLUDE), which is all
-- a range read selects: the read is an index-only scan of the host's contiguous leaf pages
-- (docs/metrics.md, Storage; docs/benchmarks.md, the 30-day chart). min/max stay in the heap.
-- An index-only scan reads the heap only for pages not yet marked all-visible by a vacuum; hourly
-- rows are rewritten every minute until their hour ends, so vacuum these tables after 1 % of their
-- rows changed (default 20 %: about a day of a large fleet's hours) to keep that tail short.
-- Rebuilding the key locks each table against writes while it runs (once, at the upgrade).
ALTER TABLE "metric_rollups_1h" DROP CONSTRAINT "metric_rollups_1h_pk", ADD CONSTRAINT "metric_rollups_1h_pk" PRIMARY KEY ("host_id", "ts") INCLUDE ("cpu", "cpu_user", "cpu_system", "cpu_iowait", "cpu_steal", "load1", "load5", "load15", "mem_total", "mem_used", "mem_available", "mem_cached", "swap_total", "swap_used", "disk_total", "disk_used", "disk_used_max_pct", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps", "tcp_conns", "udp_conns", "procs", "uptime", "temp_max", "agent_cpu", "agent_rss");--> statement-breakpoint
ALTER TABLE "metric_rollups_1m" DROP CONSTRAINT "metric_rollups_1m_pk", ADD CONSTRAINT "metric_rollups_1m_pk" PRIMARY KEY ("host_id", "ts") INCLUDE ("cpu", "cpu_user", "cpu_system", "cpu_iowait", "cpu_steal", "load1", "load5", "load15", "mem_total", "mem_used", "mem_available", "mem_cached", "swap_total", "swap_used", "disk_total", "disk_used", "disk_used_max_pct", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps", "tcp_conns", "udp_conns", "procs", "uptime", "temp_max", "agent_cpu", "agent_rss");--> statement-breakpoint
ALTER TABLE "metric_rollups_1h" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);--> statement-breakpoint
ALTER TABLE "metric_rollups_1m" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);
