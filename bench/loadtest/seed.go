package main

import (
	"context"
	"fmt"

	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// seed makes the run's users and organization through Better Auth's HTTP
// API, as an application would: an owner who creates the organization, an
// admin and a member invited into it, and a user of no organization. Each
// gets a JWT from /api/auth/token. tag keeps emails and the slug unique.
func seed(ctx context.Context, ba *baclient.Client, tag string) (world, error) {
	var w world
	sessions := make([]*baclient.Session, numActors)
	for a := range anonymous {
		email := fmt.Sprintf("%s-%s@loadtest.example", a, tag)
		s, err := ba.SignUp(ctx, email, "loadtest-password-123", a.String())
		if err != nil {
			return world{}, fmt.Errorf("sign up %s: %w", a, err)
		}
		sessions[a] = s
	}
	orgID, err := ba.CreateOrganization(ctx, sessions[owner], "Loadtest "+tag, "loadtest-"+tag)
	if err != nil {
		return world{}, fmt.Errorf("create organization: %w", err)
	}
	w.orgID = orgID
	for _, a := range []actor{admin, member} {
		if _, err := ba.AddMember(ctx, sessions[owner], sessions[a], orgID, a.String()); err != nil {
			return world{}, fmt.Errorf("add %s: %w", a, err)
		}
	}
	for a := range anonymous {
		tok, err := ba.Token(ctx, sessions[a])
		if err != nil {
			return world{}, fmt.Errorf("token for %s: %w", a, err)
		}
		w.users[a] = identity{userID: sessions[a].UserID, auth: "Bearer " + tok}
	}
	return w, nil
}
