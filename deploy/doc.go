// Package deploy holds what docker-compose.yml builds and mounts besides
// the sidecar's own image (betterauth.Dockerfile, policies.compose.yaml,
// upstream.nginx.conf, postgres-init.sql) and, in httpprobe, the image's
// healthcheck command. It has no Go API: its tests check
// docker-compose.yml, both Dockerfiles and these files.
package deploy
