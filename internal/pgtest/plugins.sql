-- HAND-WRITTEN, NOT A MIGRATOR DUMP. Stand-in until the Better Auth fixture (branch fixture)
-- configures these plugins; then replace it with the migrator's pg_dump, like schema.sql.
--
-- Applied after schema.sql (plural names). It adds what Better Auth 1.7.25's migrator creates on
-- PostgreSQL for the plugins the sidecar reads and the fixture does not configure yet
-- (docs/better-auth-source-notes.md §7, §8, §10: string/id text, boolean boolean, date
-- timestamptz, number integer, required fields NOT NULL, no database defaults in CREATE TABLE,
-- an index per `index: true` field named <table>_<field>_idx):
--   - @better-auth/api-key 1.7.5, table apikey renamed "apikeys" (schema.apikey.modelName);
--   - anonymous: users."isAnonymous" boolean, nullable;
--   - two-factor: users."twoFactorEnabled" boolean, nullable (its twoFactor table is not read
--     by the sidecar and is left out).

CREATE TABLE public.apikeys (
    id text NOT NULL,
    "configId" text NOT NULL,
    name text,
    start text,
    "referenceId" text NOT NULL,
    prefix text,
    key text NOT NULL,
    "refillInterval" integer,
    "refillAmount" integer,
    "lastRefillAt" timestamp with time zone,
    enabled boolean,
    "rateLimitEnabled" boolean,
    "rateLimitTimeWindow" integer,
    "rateLimitMax" integer,
    "requestCount" integer,
    remaining integer,
    "lastRequest" timestamp with time zone,
    "expiresAt" timestamp with time zone,
    "createdAt" timestamp with time zone NOT NULL,
    "updatedAt" timestamp with time zone NOT NULL,
    permissions text,
    metadata text
);

ALTER TABLE ONLY public.apikeys
    ADD CONSTRAINT apikeys_pkey PRIMARY KEY (id);

CREATE INDEX "apikeys_configId_idx" ON public.apikeys USING btree ("configId");

CREATE INDEX "apikeys_referenceId_idx" ON public.apikeys USING btree ("referenceId");

CREATE INDEX apikeys_key_idx ON public.apikeys USING btree (key);

ALTER TABLE public.users ADD COLUMN "isAnonymous" boolean;

ALTER TABLE public.users ADD COLUMN "twoFactorEnabled" boolean;
