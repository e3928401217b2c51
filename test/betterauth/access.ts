// Access control of the fixture app: the statements and static roles it
// passes to Better Auth's organization plugin, and the admin plugin's roles
// (Better Auth's defaults: the app passes none). server.ts and print-roles.ts
// both import it, so the roles.json an application team gives the sidecar is
// printed from the very objects Better Auth checks.
//
// The organization statements are Better Auth's defaults (which its own
// endpoints check: member:create for invitations, ac:create for create-role,
// ...) plus the application's own resource, `leave`. The roles mirror the
// sidecar's policies.yaml:
//   member = leave:request, leave:read
//   admin  = member + leave:approve + member:*
//   owner  = admin + organization:delete
// and each keeps the permissions Better Auth grants its built-in role of the
// same name, so invite/accept/update-role/remove-member/create-role work.
//
// EXTRA_STATIC_ROLE=name:{"resource":["action",...]} adds one more static
// role (for tests of a dynamic role that a later configuration shadows).
import { createAccessControl } from "better-auth/plugins/access";
import {
  defaultRoles as adminDefaultRoles,
  defaultStatements as adminDefaultStatements,
} from "better-auth/plugins/admin/access";
import {
  adminAc,
  defaultStatements,
  memberAc,
  ownerAc,
} from "better-auth/plugins/organization/access";

type Statements = Record<string, readonly string[]>;

function union(...parts: Statements[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const part of parts) {
    for (const [resource, actions] of Object.entries(part)) {
      out[resource] = [...new Set([...(out[resource] ?? []), ...actions])];
    }
  }
  return out;
}

export const statements = union(defaultStatements, {
  organization: ["delete", ...defaultStatements.organization],
  member: [...defaultStatements.member],
  leave: ["request", "read", "approve"],
});
export const ac = createAccessControl(statements);

const memberPerms = union(memberAc.statements, { leave: ["request", "read"] });
const adminPerms = union(adminAc.statements, memberPerms, {
  leave: ["approve"],
  member: [...statements.member],
});
const ownerPerms = union(ownerAc.statements, adminPerms, { organization: ["delete"] });

// extraStaticRole parses EXTRA_STATIC_ROLE (name:JSON), or returns null.
function extraStaticRole(raw: string | undefined): [string, Record<string, string[]>] | null {
  if (raw === undefined || raw === "") return null;
  const colon = raw.indexOf(":");
  const name = colon < 0 ? "" : raw.slice(0, colon).trim();
  let perms: unknown;
  try {
    perms = JSON.parse(raw.slice(colon + 1));
  } catch {
    perms = null;
  }
  const valid =
    perms !== null &&
    typeof perms === "object" &&
    !Array.isArray(perms) &&
    Object.values(perms).every((a) => Array.isArray(a) && a.every((x) => typeof x === "string"));
  if (name === "" || !valid) {
    throw new Error(`EXTRA_STATIC_ROLE must be name:{"resource":["action",...]}, got ${JSON.stringify(raw)}`);
  }
  return [name, perms as Record<string, string[]>];
}

const extra = extraStaticRole(process.env.EXTRA_STATIC_ROLE);

// The static organization roles, by name, as organization({ ac, roles }) takes them.
export const roles = {
  owner: ac.newRole(ownerPerms),
  admin: ac.newRole(adminPerms),
  member: ac.newRole(memberPerms),
  ...(extra ? { [extra[0]]: ac.newRole(extra[1]) } : {}),
};

// The admin plugin's statements and roles: Better Auth's defaults, which
// admin() uses when the app passes no `ac`/`roles` (this app passes none).
export const adminStatements: Statements = adminDefaultStatements;
export const adminRoles = adminDefaultRoles;
