# Multi-stage build: compile with the Rust toolchain, run on a slim image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin headcount

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/headcount headcount \
    && mkdir -p /var/lib/headcount && chown headcount /var/lib/headcount
COPY --from=build /src/target/release/headcount /usr/local/bin/headcount
USER headcount
WORKDIR /var/lib/headcount
ENV HEADCOUNT_LISTEN=0.0.0.0:8080 HEADCOUNT_DATA_DIR=/var/lib/headcount
EXPOSE 8080
HEALTHCHECK CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"]
ENTRYPOINT ["headcount"]
CMD ["serve"]
