package extauthz

import (
	"encoding/json"
	"strings"
)

// denyBody renders {"error":..., "reason":...}. The detail comes from the
// engine, which never puts a token in it.
func denyBody(errName, detail string) string {
	b, err := json.Marshal(struct {
		Error  string `json:"error"`
		Reason string `json:"reason,omitempty"`
	}{errName, detail})
	if err != nil {
		return `{"error":"` + errName + `"}`
	}
	return string(b)
}

func joinRoles(roles []string) string {
	if len(roles) == 1 {
		return roles[0]
	}
	return strings.Join(roles, ",")
}
