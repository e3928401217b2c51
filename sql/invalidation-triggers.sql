-- Invalidation triggers for the authz sidecar (opt-in).
--
-- Makes PostgreSQL tell the sidecar, within milliseconds of a commit, that a
-- membership, a user's standing, an organization or a custom role changed,
-- whoever made the change (Better Auth, a script, psql). A sidecar started
-- with --pg-listen LISTENs on channel authz_invalidate and republishes each
-- notification on the Redis invalidation channel, so every replica drops
-- what it cached about it (docs/consistency.md).
--
-- Apply once, as a role that may create functions and triggers on Better
-- Auth's tables (typically the role Better Auth migrates with), after Better
-- Auth's migrator has created the tables, and again after a migration that
-- recreates them:
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/invalidation-triggers.sql
--
-- It is idempotent (CREATE OR REPLACE, DROP ... IF EXISTS). It needs the
-- admin plugin's users columns (role, banned, "banExpires"), which the
-- sidecar reads anyway, and PostgreSQL 13 or later (gen_random_uuid). The
-- sidecar's own role needs no privilege for LISTEN, and stays read-only.
--
-- Notifications are sent at commit and only if the transaction commits; one
-- per changed row (deleting an organization also notifies for each member
-- and custom role removed by ON DELETE CASCADE). Each payload is a message
-- in the sidecar's format, e.g.
--   {"v":1,"id":"<uuid>","kind":"member","user":"<user id>","org":"<org id>","src":"pg","at":<unix ms>}
--
-- To remove:
--   DROP TRIGGER IF EXISTS authz_invalidate_members ON members;
--   DROP TRIGGER IF EXISTS authz_invalidate_members_update ON members;
--   DROP TRIGGER IF EXISTS authz_invalidate_users_update ON users;
--   DROP TRIGGER IF EXISTS authz_invalidate_users_delete ON users;
--   DROP TRIGGER IF EXISTS authz_invalidate_roles ON "organizationRoles";
--   DROP TRIGGER IF EXISTS authz_invalidate_organizations_update ON organizations;
--   DROP TRIGGER IF EXISTS authz_invalidate_organizations_delete ON organizations;
--   DROP FUNCTION IF EXISTS authz_invalidate_members(), authz_invalidate_users(),
--     authz_invalidate_roles(), authz_invalidate_organizations(), authz_invalidate_notify(jsonb);

BEGIN;

-- authz_invalidate_notify completes a message (version, unique id, source,
-- time) and queues it on channel authz_invalidate. The unique id keeps
-- PostgreSQL from folding identical notifications of one transaction
-- together, and lets sidecars drop a message they already applied.
CREATE OR REPLACE FUNCTION authz_invalidate_notify(message jsonb) RETURNS void
LANGUAGE sql VOLATILE AS $$
	SELECT pg_notify('authz_invalidate', (message || jsonb_build_object(
		'v', 1,
		'id', gen_random_uuid()::text,
		'src', 'pg',
		'at', (extract(epoch FROM clock_timestamp()) * 1000)::bigint
	))::text);
$$;

-- members: a membership added, removed, or changed (role, or moved to
-- another user or organization): the user's answers, before and after.
CREATE OR REPLACE FUNCTION authz_invalidate_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM authz_invalidate_notify(jsonb_build_object(
			'kind', 'member', 'user', OLD."userId", 'org', OLD."organizationId"));
	END IF;
	IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (NEW."userId", NEW."organizationId")
			IS DISTINCT FROM (OLD."userId", OLD."organizationId")) THEN
		PERFORM authz_invalidate_notify(jsonb_build_object(
			'kind', 'member', 'user', NEW."userId", 'org', NEW."organizationId"));
	END IF;
	RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS authz_invalidate_members ON members;
CREATE TRIGGER authz_invalidate_members
	AFTER INSERT OR DELETE ON members
	FOR EACH ROW EXECUTE FUNCTION authz_invalidate_members();

DROP TRIGGER IF EXISTS authz_invalidate_members_update ON members;
CREATE TRIGGER authz_invalidate_members_update
	AFTER UPDATE ON members
	FOR EACH ROW
	WHEN ((OLD.role, OLD."userId", OLD."organizationId") IS DISTINCT FROM (NEW.role, NEW."userId", NEW."organizationId"))
	EXECUTE FUNCTION authz_invalidate_members();

-- users: a ban, an unban, a ban's end moved, the global role changed, or
-- the user deleted. Other updates (name, image, updatedAt) do not notify.
CREATE OR REPLACE FUNCTION authz_invalidate_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM authz_invalidate_notify(jsonb_build_object('kind', 'user', 'user', OLD.id));
	RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS authz_invalidate_users_update ON users;
CREATE TRIGGER authz_invalidate_users_update
	AFTER UPDATE ON users
	FOR EACH ROW
	WHEN ((OLD.role, OLD.banned, OLD."banExpires") IS DISTINCT FROM (NEW.role, NEW.banned, NEW."banExpires"))
	EXECUTE FUNCTION authz_invalidate_users();

DROP TRIGGER IF EXISTS authz_invalidate_users_delete ON users;
CREATE TRIGGER authz_invalidate_users_delete
	AFTER DELETE ON users
	FOR EACH ROW EXECUTE FUNCTION authz_invalidate_users();

-- "organizationRoles": any change to an organization's custom role
-- invalidates the whole organization (before and after, if moved).
CREATE OR REPLACE FUNCTION authz_invalidate_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM authz_invalidate_notify(jsonb_build_object(
			'kind', 'role', 'org', OLD."organizationId", 'role', OLD.role));
	END IF;
	IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (NEW."organizationId", NEW.role)
			IS DISTINCT FROM (OLD."organizationId", OLD.role)) THEN
		PERFORM authz_invalidate_notify(jsonb_build_object(
			'kind', 'role', 'org', NEW."organizationId", 'role', NEW.role));
	END IF;
	RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS authz_invalidate_roles ON "organizationRoles";
CREATE TRIGGER authz_invalidate_roles
	AFTER INSERT OR UPDATE OR DELETE ON "organizationRoles"
	FOR EACH ROW EXECUTE FUNCTION authz_invalidate_roles();

-- organizations: a slug change or a deletion. The slugs are included so
-- that answers cached under a slug (the old one, or the new one while it
-- named nothing) are dropped too.
CREATE OR REPLACE FUNCTION authz_invalidate_organizations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		PERFORM authz_invalidate_notify(jsonb_build_object(
			'kind', 'org', 'org', OLD.id, 'slugs', jsonb_build_array(OLD.slug)));
	ELSE
		PERFORM authz_invalidate_notify(jsonb_build_object(
			'kind', 'org', 'org', OLD.id, 'slugs', jsonb_build_array(OLD.slug, NEW.slug)));
	END IF;
	RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS authz_invalidate_organizations_update ON organizations;
CREATE TRIGGER authz_invalidate_organizations_update
	AFTER UPDATE ON organizations
	FOR EACH ROW
	WHEN ((OLD.id, OLD.slug) IS DISTINCT FROM (NEW.id, NEW.slug))
	EXECUTE FUNCTION authz_invalidate_organizations();

DROP TRIGGER IF EXISTS authz_invalidate_organizations_delete ON organizations;
CREATE TRIGGER authz_invalidate_organizations_delete
	AFTER DELETE ON organizations
	FOR EACH ROW EXECUTE FUNCTION authz_invalidate_organizations();

COMMIT;
