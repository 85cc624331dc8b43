"""`offload-status`: serve the status API with uvicorn on OFFLOAD_HOST:OFFLOAD_PORT (default 0.0.0.0:8001)."""

from offload_core.web.serve import serve


def main() -> None:
    serve("offload_status.app:create_app", default_port=8001)


if __name__ == "__main__":
    main()
