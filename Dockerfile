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

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tiktok-auth-proxy /usr/local/bin/tiktok-auth-proxy
# The config is mounted read-only; the token store lives on a volume the
# nonroot user (65532) owns. In a container, listen on 0.0.0.0 and set
# `clients` (proxy) and `admin_token` (admin), which the config check requires.
VOLUME ["/var/lib/tiktok-auth-proxy"]
EXPOSE 8080 8081
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tiktok-auth-proxy"]
CMD ["serve", "--config", "/etc/tiktok-auth-proxy/config.yaml"]
