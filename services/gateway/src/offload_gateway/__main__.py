"""`offload-gateway`: serve the gateway with uvicorn on OFFLOAD_HOST:OFFLOAD_PORT (default 0.0.0.0:8000)."""

from offload_core.web.serve import serve


def main() -> None:
    serve("offload_gateway.app:create_app", default_port=8000)


if __name__ == "__main__":
    main()
