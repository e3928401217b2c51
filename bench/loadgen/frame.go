package loadgen

import (
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// HTTPFrame encodes the CheckRequest Envoy sends for an HTTP request with
// method, path and headers (lower-case names), for Request.Frame.
func HTTPFrame(method, path string, headers map[string]string) ([]byte, error) {
	b, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "app.example.test", Scheme: "https", Protocol: "HTTP/1.1", Headers: headers,
		}},
	}})
	if err != nil {
		return nil, fmt.Errorf("loadgen: encode %s %s: %w", method, path, err)
	}
	return b, nil
}
