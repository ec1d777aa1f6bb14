# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/tiktok-auth-proxy ./cmd/tiktok-auth-proxy
# The store's directory, created here because the final image has no shell;
# copied with its owner so a fresh volume mounted there is writable by 65532.
RUN mkdir -p /out/data && chmod 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tiktok-auth-proxy /usr/local/bin/tiktok-auth-proxy
COPY --from=build --chown=65532:65532 /out/data /var/lib/tiktok-auth-proxy
# The config is mounted read-only; the token store lives on a volume the
# nonroot user (65532) owns: set store.path to
# /var/lib/tiktok-auth-proxy/tokens.json. In a container, listen on 0.0.0.0
# and set `clients` (proxy) and `admin_token` (admin), which the config check
# requires; README.md "Container" has a complete config.
VOLUME ["/var/lib/tiktok-auth-proxy"]
EXPOSE 8080 8081
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tiktok-auth-proxy"]
CMD ["serve", "--config", "/etc/tiktok-auth-proxy/config.yaml"]
