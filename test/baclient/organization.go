package baclient

import (
	"context"
	"errors"
	"net/url"
)

// CreateOrganization creates an organization; its creator becomes owner,
// and (teams on) member of a default team named after it.
func (c *Client) CreateOrganization(ctx context.Context, s *Session, name, slug string) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/create", map[string]string{"name": name, "slug": slug}, &r)
	return r.ID, err
}

// Invite invites email into the organization with one or more roles and
// returns the invitation id.
func (c *Client) Invite(ctx context.Context, s *Session, orgID, email string, roles ...string) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/invite-member",
		map[string]any{"email": email, "role": roles, "organizationId": orgID}, &r)
	return r.ID, err
}

// Accept accepts an invitation as the invited user and returns the new
// member id.
func (c *Client) Accept(ctx context.Context, s *Session, invitationID string) (string, error) {
	var r struct {
		Member struct {
			ID string `json:"id"`
		} `json:"member"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/accept-invitation", map[string]string{"invitationId": invitationID}, &r)
	return r.Member.ID, err
}

// AddMember invites email with roles and accepts as invitee; it returns the
// member id.
func (c *Client) AddMember(ctx context.Context, inviter, invitee *Session, orgID string, roles ...string) (string, error) {
	inv, err := c.Invite(ctx, inviter, orgID, invitee.Email, roles...)
	if err != nil {
		return "", err
	}
	return c.Accept(ctx, invitee, inv)
}

// UpdateMemberRole replaces a member's roles.
func (c *Client) UpdateMemberRole(ctx context.Context, s *Session, orgID, memberID string, roles ...string) error {
	_, err := c.do(ctx, s, "POST", "/organization/update-member-role",
		map[string]any{"memberId": memberID, "role": roles, "organizationId": orgID}, nil)
	return err
}

// RemoveMember removes a member (by member id or email).
func (c *Client) RemoveMember(ctx context.Context, s *Session, orgID, memberIDOrEmail string) error {
	_, err := c.do(ctx, s, "POST", "/organization/remove-member",
		map[string]string{"memberIdOrEmail": memberIDOrEmail, "organizationId": orgID}, nil)
	return err
}

// LeaveOrganization removes the signed-in user from the organization.
func (c *Client) LeaveOrganization(ctx context.Context, s *Session, orgID string) error {
	_, err := c.do(ctx, s, "POST", "/organization/leave", map[string]string{"organizationId": orgID}, nil)
	return err
}

// SetActive sets the session's active organization (which the fixture's
// jwt definePayload copies into the activeOrganizationId claim); "" clears it.
func (c *Client) SetActive(ctx context.Context, s *Session, orgID string) error {
	var id any = orgID
	if orgID == "" {
		id = nil
	}
	_, err := c.do(ctx, s, "POST", "/organization/set-active", map[string]any{"organizationId": id}, nil)
	return err
}

// SetActiveTeam sets the session's active team (sessions.activeTeamId);
// "" clears it.
func (c *Client) SetActiveTeam(ctx context.Context, s *Session, teamID string) error {
	var id any = teamID
	if teamID == "" {
		id = nil
	}
	_, err := c.do(ctx, s, "POST", "/organization/set-active-team", map[string]any{"teamId": id}, nil)
	return err
}

// HasPermission asks Better Auth whether the signed-in user's roles in the
// organization grant every permission, e.g. {"leave": ["approve"]}
// (POST /organization/has-permission): Better Auth's own decision. A
// non-2xx answer is an *Error carrying Better Auth's status and body, so a
// refusal (success false, nil error) is told apart from a failure (a 500
// for an unreadable dynamic role, a 403 for a non-member).
func (c *Client) HasPermission(ctx context.Context, s *Session, orgID string, permissions map[string][]string) (bool, error) {
	var r struct {
		Success bool `json:"success"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/has-permission",
		map[string]any{"organizationId": orgID, "permissions": permissions}, &r)
	return r.Success, err
}

// Role is a dynamic (per-organization) role, a row of organizationRole.
type Role struct {
	ID             string              `json:"id"`
	OrganizationID string              `json:"organizationId"`
	Role           string              `json:"role"`
	Permission     map[string][]string `json:"permission"`
}

// CreateRole defines a dynamic role in the organization, e.g.
// permission {"leave": ["read", "approve"]}. Better Auth lowercases role.
func (c *Client) CreateRole(ctx context.Context, s *Session, orgID, role string, permission map[string][]string) error {
	_, err := c.do(ctx, s, "POST", "/organization/create-role",
		map[string]any{"role": role, "permission": permission, "organizationId": orgID}, nil)
	return err
}

// UpdateRole replaces a dynamic role's permissions.
func (c *Client) UpdateRole(ctx context.Context, s *Session, orgID, roleName string, permission map[string][]string) error {
	_, err := c.do(ctx, s, "POST", "/organization/update-role",
		map[string]any{"roleName": roleName, "organizationId": orgID, "data": map[string]any{"permission": permission}}, nil)
	return err
}

// RenameRole renames a dynamic role (update-role with data.roleName).
func (c *Client) RenameRole(ctx context.Context, s *Session, orgID, roleName, newName string) error {
	_, err := c.do(ctx, s, "POST", "/organization/update-role",
		map[string]any{"roleName": roleName, "organizationId": orgID, "data": map[string]any{"roleName": newName}}, nil)
	return err
}

// DeleteRole deletes a dynamic role (Better Auth refuses while a member
// holds it: 400 ROLE_IS_ASSIGNED_TO_MEMBERS).
func (c *Client) DeleteRole(ctx context.Context, s *Session, orgID, roleName string) error {
	_, err := c.do(ctx, s, "POST", "/organization/delete-role",
		map[string]string{"roleName": roleName, "organizationId": orgID}, nil)
	return err
}

// ListRoles lists the organization's dynamic roles.
func (c *Client) ListRoles(ctx context.Context, s *Session, orgID string) ([]Role, error) {
	var r []Role
	_, err := c.do(ctx, s, "GET", "/organization/list-roles?organizationId="+url.QueryEscape(orgID), nil, &r)
	return r, err
}

// CreateTeam creates a team in the organization and returns its id.
func (c *Client) CreateTeam(ctx context.Context, s *Session, orgID, name string) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/create-team", map[string]string{"name": name, "organizationId": orgID}, &r)
	if err == nil && r.ID == "" {
		err = errors.New("better auth POST /organization/create-team: no team id")
	}
	return r.ID, err
}

// AddTeamMember adds a member of the organization to one of its teams.
func (c *Client) AddTeamMember(ctx context.Context, s *Session, orgID, teamID, userID string) error {
	_, err := c.do(ctx, s, "POST", "/organization/add-team-member",
		map[string]string{"teamId": teamID, "userId": userID, "organizationId": orgID}, nil)
	return err
}

// RemoveTeamMember removes a user from a team (not from the organization).
func (c *Client) RemoveTeamMember(ctx context.Context, s *Session, orgID, teamID, userID string) error {
	_, err := c.do(ctx, s, "POST", "/organization/remove-team-member",
		map[string]string{"teamId": teamID, "userId": userID, "organizationId": orgID}, nil)
	return err
}

// RemoveTeam deletes a team and its memberships (Better Auth refuses the
// organization's last team and the caller's active team).
func (c *Client) RemoveTeam(ctx context.Context, s *Session, orgID, teamID string) error {
	_, err := c.do(ctx, s, "POST", "/organization/remove-team", map[string]string{"teamId": teamID, "organizationId": orgID}, nil)
	return err
}
