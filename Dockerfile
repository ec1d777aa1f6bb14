# The runtime image, FROM scratch so that building it pulls nothing from a
# registry. It is assembled from files staged on the host: run
#   make image                      (Debian's buildah), or
#   make image-context && docker build -t tiktok-auth-proxy .
# image-context builds the static binary (make build) and stages it under
# bin/image/ with the CA bundle TikTok's TLS certificate is checked
# against, a passwd/group entry for the non-root user 65532 and the
# store's directory.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="tiktok-auth-proxy" org.opencontainers.image.version="${VERSION}"
COPY bin/image/rootfs/ /
# The store's directory, owned by the non-root user so that a fresh volume
# mounted there is writable by it; the image has no shell to create it.
COPY --chown=65532:65532 bin/image/state/ /var/lib/
# The config is mounted read-only; the token store lives on the volume: set
# store.path to /var/lib/tiktok-auth-proxy/tokens.json. In a container,
# listen on 0.0.0.0 and set `clients` (proxy) and `admin_token` (admin),
# which the config check requires; README.md "Container" has a complete
# config. The root filesystem may be mounted read-only.
VOLUME ["/var/lib/tiktok-auth-proxy"]
EXPOSE 8080 8081
USER 65532:65532
# No shell or curl in the image: the binary asks its own /readyz, on the
# config's admin_listen.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tiktok-auth-proxy", "healthcheck", "--config", "/etc/tiktok-auth-proxy/config.yaml"]
ENTRYPOINT ["/usr/local/bin/tiktok-auth-proxy"]
CMD ["serve", "--config", "/etc/tiktok-auth-proxy/config.yaml"]
