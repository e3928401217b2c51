// Prints the app's static roles as JSON for the authz sidecar:
//
//   bun print-roles.ts > roles.json
//
// Shape: {"organization": {"statements": {resource: [actions]}, "roles": {role: {resource: [actions]}}},
//         "admin": {...same, the admin plugin's}}.
// To use it in an application, import instead the app's own statements and
// roles: the objects it passes to organization({ ac, roles }) and admin()
// (Better Auth's defaults, from better-auth/plugins/admin/access, when it
// passes none).
import { adminRoles, adminStatements, roles, statements } from "./access.ts";

type Role = { statements: Record<string, readonly string[]> };
const perms = (rs: Record<string, Role>) => Object.fromEntries(Object.entries(rs).map(([n, r]) => [n, r.statements]));

console.log(
  JSON.stringify(
    {
      organization: { statements, roles: perms(roles) },
      admin: { statements: adminStatements, roles: perms(adminRoles) },
    },
    null,
    2,
  ),
);
