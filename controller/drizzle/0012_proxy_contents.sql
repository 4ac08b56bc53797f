CREATE TABLE "config_contents" (
	"sha256" text PRIMARY KEY NOT NULL,
	"content" text NOT NULL,
	"bytes" integer NOT NULL,
	"used_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "config_user_sets" (
	"sha256" text PRIMARY KEY NOT NULL,
	"user_ids" jsonb NOT NULL,
	"count" integer NOT NULL,
	"used_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "config_generations" ADD COLUMN "user_set" text;--> statement-breakpoint
CREATE INDEX "config_generations_user_set" ON "config_generations" USING btree ("user_set");