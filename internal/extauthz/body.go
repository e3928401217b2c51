package extauthz

import (
	"strings"
)

func joinRoles(roles []string) string {
	if len(roles) == 1 {
		return roles[0]
	}
	return strings.Join(roles, ",")
}
