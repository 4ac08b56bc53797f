ALTER TABLE "stream_chunks" ADD COLUMN "grams" "bytea";--> statement-breakpoint
ALTER TABLE "stream_chunks" ALTER COLUMN "grams" SET STORAGE EXTERNAL;
