# Build: a static binary, no cgo. The Go image is go.mod's exact version.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version the binary reports (sessiond version): pass the release's tag,
# e.g. docker build --build-arg VERSION=$(git describe --tags --always) .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sessiond .

# Run: no shell, no package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sessiond /sessiond
EXPOSE 3000
USER nonroot:nonroot
# The image has no curl or shell: the binary probes its own /readyz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/sessiond", "healthcheck"]
ENTRYPOINT ["/sessiond"]
CMD ["serve"]
