"""The address a request came from, for the failed-login limits (settings: django-axes)."""

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The peer's address, or with CRCR_CLIENT_IP_HEADER (behind a load balancer) the last
    address in that header: the one the balancer itself saw, which a client cannot forge."""
    header = settings.CRCR_CLIENT_IP_HEADER
    if header:
        forwarded = request.headers.get(header, "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return str(request.META.get("REMOTE_ADDR") or "")
