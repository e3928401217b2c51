-- Invalidation triggers for the authz sidecar (opt-in).
--
-- Makes PostgreSQL tell the sidecar, within milliseconds of a commit, that a
-- membership (of an organization or a team), a user's standing, an
-- organization, a custom role, a session or an API key changed, whoever made
-- the change (Better Auth, a script, psql). A sidecar started
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
-- tables of optional features get their triggers only if they exist:
-- sessions (absent when Better Auth keeps sessions only in its secondary
-- storage), apikeys (the api-key plugin), teams and "teamMembers" (teams).
-- The sidecar's own role needs no privilege for LISTEN, and stays read-only.
--
-- Table names: this file uses Better Auth's names in plural form (usePlural,
-- or modelName: "members", ...). With Better Auth's default, singular names,
-- replace them throughout before applying:
--   members -> member, users -> "user", organizations -> organization,
--   "organizationRoles" -> "organizationRole", sessions -> session,
--   apikeys -> apikey, teams -> team, "teamMembers" -> "teamMember"
-- ("user" must stay quoted: it is a reserved word; trigger and function
-- names keep their plural: they are the sidecar's).
-- Column names are Better Auth's field names; renamed columns (fields:
-- {...}) need the same edit.
--
-- Notifications are sent at commit and only if the transaction commits; one
-- per changed row (deleting an organization also notifies for each member
-- and custom role removed by ON DELETE CASCADE). Each payload is a message
-- in the sidecar's format, e.g.
--   {"v":1,"id":"<uuid>","kind":"member","user":"<user id>","org":"<org id>","src":"pg","at":<unix ms>}
--
-- To remove:
--   DROP TRIGGER IF EXISTS authz_invalidate_sessions ON sessions;
--   DROP TRIGGER IF EXISTS authz_invalidate_sessions_update ON sessions;
--   DROP TRIGGER IF EXISTS authz_invalidate_apikeys ON apikeys;
--   DROP TRIGGER IF EXISTS authz_invalidate_apikeys_update ON apikeys;
--   DROP TRIGGER IF EXISTS authz_invalidate_team_members ON "teamMembers";
--   DROP TRIGGER IF EXISTS authz_invalidate_team_members_update ON "teamMembers";
--   DROP TRIGGER IF EXISTS authz_invalidate_members ON members;
--   DROP TRIGGER IF EXISTS authz_invalidate_members_update ON members;
--   DROP TRIGGER IF EXISTS authz_invalidate_users_update ON users;
--   DROP TRIGGER IF EXISTS authz_invalidate_users_delete ON users;
--   DROP TRIGGER IF EXISTS authz_invalidate_roles ON "organizationRoles";
--   DROP TRIGGER IF EXISTS authz_invalidate_organizations_update ON organizations;
--   DROP TRIGGER IF EXISTS authz_invalidate_organizations_delete ON organizations;
--   DROP FUNCTION IF EXISTS authz_invalidate_members(), authz_invalidate_users(),
--     authz_invalidate_roles(), authz_invalidate_organizations(), authz_invalidate_sessions(),
--     authz_invalidate_apikeys(), authz_invalidate_team_members(),
--     authz_invalidate_team_member(text, text), authz_invalidate_notify(jsonb);

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

-- sessions: a session deleted (sign-out, revocation, ban, its user deleted)
-- or changed in what the sidecar reads (active organization or team,
-- impersonation, user, token, an expiry moved earlier, and any column this
-- file does not know). Not the daily refresh that moves expiresAt later, nor
-- updatedAt, "ipAddress" or "userAgent": a cached session is never kept past
-- its expiresAt anyway.
CREATE OR REPLACE FUNCTION authz_invalidate_sessions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM authz_invalidate_notify(jsonb_build_object(
		'kind', 'session', 'session', OLD.id, 'user', OLD."userId"));
	IF TG_OP = 'UPDATE' AND (NEW.id, NEW."userId") IS DISTINCT FROM (OLD.id, OLD."userId") THEN
		PERFORM authz_invalidate_notify(jsonb_build_object(
			'kind', 'session', 'session', NEW.id, 'user', NEW."userId"));
	END IF;
	RETURN NULL;
END;
$$;

-- apikeys: a key deleted (by its owner, or by Better Auth when expired or
-- used up) or changed in what the sidecar reads (enabled, expiry,
-- permissions, owner, configuration, whether usage is counted, and any
-- column this file does not know). Not the usage counters every
-- verification writes ("requestCount", "lastRequest", remaining's value,
-- "lastRefillAt", "updatedAt").
CREATE OR REPLACE FUNCTION authz_invalidate_apikeys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM authz_invalidate_notify(jsonb_build_object('kind', 'apikey', 'apikey', OLD.id));
	IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
		PERFORM authz_invalidate_notify(jsonb_build_object('kind', 'apikey', 'apikey', NEW.id));
	END IF;
	RETURN NULL;
END;
$$;

-- "teamMembers": a team membership added, removed or moved: the user's
-- answers, as a member message naming the team's organization. When the
-- team is gone already (deleted, or with its organization, cascading here),
-- a user message: the same answers, without the organization's name.
CREATE OR REPLACE FUNCTION authz_invalidate_team_member(member_user text, member_team text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	org text;
BEGIN
	SELECT t."organizationId" INTO org FROM teams t WHERE t.id = member_team;
	IF org IS NULL THEN
		PERFORM authz_invalidate_notify(jsonb_build_object('kind', 'user', 'user', member_user));
	ELSE
		PERFORM authz_invalidate_notify(jsonb_build_object('kind', 'member', 'user', member_user, 'org', org));
	END IF;
END;
$$;

CREATE OR REPLACE FUNCTION authz_invalidate_team_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM authz_invalidate_team_member(OLD."userId", OLD."teamId");
	END IF;
	IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (NEW."userId", NEW."teamId")
			IS DISTINCT FROM (OLD."userId", OLD."teamId")) THEN
		PERFORM authz_invalidate_team_member(NEW."userId", NEW."teamId");
	END IF;
	RETURN NULL;
END;
$$;

-- The optional tables' triggers, where the tables exist.
DO $$
BEGIN
	IF to_regclass('sessions') IS NOT NULL THEN
		DROP TRIGGER IF EXISTS authz_invalidate_sessions ON sessions;
		CREATE TRIGGER authz_invalidate_sessions
			AFTER DELETE ON sessions
			FOR EACH ROW EXECUTE FUNCTION authz_invalidate_sessions();
		DROP TRIGGER IF EXISTS authz_invalidate_sessions_update ON sessions;
		CREATE TRIGGER authz_invalidate_sessions_update
			AFTER UPDATE ON sessions
			FOR EACH ROW
			WHEN ((to_jsonb(OLD) - 'updatedAt' - 'expiresAt' - 'ipAddress' - 'userAgent')
					IS DISTINCT FROM (to_jsonb(NEW) - 'updatedAt' - 'expiresAt' - 'ipAddress' - 'userAgent')
				OR NEW."expiresAt" < OLD."expiresAt")
			EXECUTE FUNCTION authz_invalidate_sessions();
	END IF;
	IF to_regclass('apikeys') IS NOT NULL THEN
		DROP TRIGGER IF EXISTS authz_invalidate_apikeys ON apikeys;
		CREATE TRIGGER authz_invalidate_apikeys
			AFTER DELETE ON apikeys
			FOR EACH ROW EXECUTE FUNCTION authz_invalidate_apikeys();
		DROP TRIGGER IF EXISTS authz_invalidate_apikeys_update ON apikeys;
		CREATE TRIGGER authz_invalidate_apikeys_update
			AFTER UPDATE ON apikeys
			FOR EACH ROW
			WHEN ((to_jsonb(OLD) - 'requestCount' - 'lastRequest' - 'remaining' - 'lastRefillAt' - 'updatedAt')
					IS DISTINCT FROM (to_jsonb(NEW) - 'requestCount' - 'lastRequest' - 'remaining' - 'lastRefillAt' - 'updatedAt')
				OR (OLD.remaining IS NULL) IS DISTINCT FROM (NEW.remaining IS NULL))
			EXECUTE FUNCTION authz_invalidate_apikeys();
	END IF;
	IF to_regclass('"teamMembers"') IS NOT NULL THEN
		DROP TRIGGER IF EXISTS authz_invalidate_team_members ON "teamMembers";
		CREATE TRIGGER authz_invalidate_team_members
			AFTER INSERT OR DELETE ON "teamMembers"
			FOR EACH ROW EXECUTE FUNCTION authz_invalidate_team_members();
		DROP TRIGGER IF EXISTS authz_invalidate_team_members_update ON "teamMembers";
		CREATE TRIGGER authz_invalidate_team_members_update
			AFTER UPDATE ON "teamMembers"
			FOR EACH ROW
			WHEN ((OLD."userId", OLD."teamId") IS DISTINCT FROM (NEW."userId", NEW."teamId"))
			EXECUTE FUNCTION authz_invalidate_team_members();
	END IF;
END;
$$;

COMMIT;
