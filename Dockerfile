# The camfleet controller (the `camfleet` command) as an image; docker-compose.yml runs it next
# to mosquitto. Built from this checkout: docker build -t camfleet .
FROM python:3.11-slim

WORKDIR /src
# The package is laid out by area (setup.py maps each folder onto camfleet.*): copy them all.
COPY pyproject.toml setup.py README.md ./
COPY camfleet ./camfleet
COPY proto ./proto
COPY controller ./controller
COPY edge ./edge
COPY esp32_node ./esp32_node
COPY broker_config ./broker_config
RUN pip install --no-cache-dir . && rm -rf /src

# Not root: the data volume belongs to this user.
RUN useradd --system --uid 10001 --home-dir /data camfleet \
    && mkdir -p /data && chown camfleet /data
USER camfleet
WORKDIR /data
VOLUME /data
EXPOSE 8080

ENTRYPOINT ["camfleet"]
# Inside the container the API must listen on the container's network; docker-compose.yml
# publishes it on the host's loopback only (put a TLS reverse proxy in front for anything else).
CMD ["controller", "run", "--data", "/data", "--http", "0.0.0.0:8080"]
