-- Runs once, when the compose stack's Postgres volume is created (the
-- postgres image runs /docker-entrypoint-initdb.d/*.sql in $POSTGRES_DB).
-- authz-sidecar only reads Better Auth's tables, so it connects as a role
-- that can do nothing else. Better Auth's migrator creates the tables later
-- as "postgres"; the default privileges below grant SELECT on them as they
-- appear. The password is for this local stack only.
CREATE ROLE authz_reader LOGIN PASSWORD 'authz_reader';
GRANT CONNECT ON DATABASE betterauth TO authz_reader;
GRANT USAGE ON SCHEMA public TO authz_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO authz_reader;
ALTER ROLE authz_reader SET default_transaction_read_only = on;
