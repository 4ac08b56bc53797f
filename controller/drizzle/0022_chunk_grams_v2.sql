-- The logs chunks' gram filters change format (repositories/log-grams.ts: four probes per gram
-- from murmur3-mixed hashes, where format 1 set two bits from a weakly mixed hash). A filter of
-- format 1 probed as format 2 could say "no" for a chunk that holds the literal, so every filter
-- is dropped here; a chunk without one is read whole by a search, and the retention job's summary
-- pass writes the new filter (the pass picks chunks whose filter is null).
UPDATE "stream_chunks" SET "grams" = NULL WHERE "grams" IS NOT NULL;
