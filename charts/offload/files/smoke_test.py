"""`helm test` for Offload: submit one job through the gateway and wait for its final state.

Runs in the gateway image, which has Python, httpx and Pillow. Configured by environment:
GATEWAY_URL, STATUS_URL, API_KEYS_FILE (`tenant:key` lines; the first key is used), JOB_TYPE
(`ocr` or `llm`) and TIMEOUT_SECONDS. Exits 0 only when the job succeeded; otherwise it says
what happened and exits 1.
"""

from __future__ import annotations

import io
import os
import sys
import time

import httpx

TERMINAL_STATES = {"succeeded", "failed", "dead", "cancelled"}


def first_api_key(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        for raw in handle.read().replace(",", "\n").splitlines():
            line = raw.split("#", 1)[0].strip()
            tenant, sep, key = line.partition(":")
            if sep and tenant.strip() and key.strip():
                return key.strip()
    raise SystemExit(f"no `tenant:key` line in {path}")


def sample_page() -> bytes:
    """A small PNG with a line of printed text: an OCR job that needs nothing outside the cluster."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1000, 200), 255)
    ImageDraw.Draw(image).text((40, 60), "Offload helm test", fill=0, font=ImageFont.load_default(size=64))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def submit(client: httpx.Client, gateway: str, job_type: str, deadline: float) -> str:
    """POST the job, retrying while the gateway is not reachable yet; return the job id."""
    while True:
        try:
            if job_type == "ocr":
                files = {"file": ("helm-test.png", sample_page(), "image/png")}
                response = client.post(f"{gateway}/v1/jobs/ocr", files=files, data={"priority": "high"})
            else:
                body = {"prompt": "Say hello.", "max_tokens": 8, "priority": "high"}
                response = client.post(f"{gateway}/v1/jobs/llm", json=body)
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway at {gateway} cannot be reached: {exc}") from exc
            print(f"waiting for the gateway: {exc}", flush=True)
            time.sleep(2)
            continue
        if response.status_code != 202:
            raise SystemExit(f"the gateway refused the job: {response.status_code} {response.text}")
        job_id = response.json()["id"]
        print(f"submitted {job_type} job {job_id}", flush=True)
        return job_id


def wait_for(client: httpx.Client, status: str, job_id: str, deadline: float) -> dict:
    """Poll the status service until the job is in a terminal state; return the job."""
    last_state = None
    while time.monotonic() < deadline:
        try:
            response = client.get(f"{status}/v1/jobs/{job_id}")
        except httpx.TransportError as exc:
            print(f"waiting for the status service: {exc}", flush=True)
        else:
            if response.status_code == 200:
                job = response.json()
                if job["state"] != last_state:
                    last_state = job["state"]
                    print(f"job {job_id}: {last_state}", flush=True)
                if last_state in TERMINAL_STATES:
                    return job
            else:
                print(f"status answered {response.status_code}: {response.text}", flush=True)
        time.sleep(1)
    raise SystemExit(f"job {job_id} did not finish in time (last state: {last_state})")


def main() -> int:
    gateway = os.environ["GATEWAY_URL"].rstrip("/")
    status = os.environ["STATUS_URL"].rstrip("/")
    job_type = os.environ.get("JOB_TYPE", "ocr")
    deadline = time.monotonic() + float(os.environ.get("TIMEOUT_SECONDS", "300"))
    headers = {"Authorization": f"Bearer {first_api_key(os.environ['API_KEYS_FILE'])}"}
    with httpx.Client(headers=headers, timeout=30) as client:
        job = wait_for(client, status, submit(client, gateway, job_type, deadline), deadline)
    if job["state"] != "succeeded":
        print(f"job ended {job['state']}: {job.get('error')}", flush=True)
        return 1
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
