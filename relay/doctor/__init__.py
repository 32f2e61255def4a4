"""The onboarding doctor: why a downstream repo's integration does or does not work
(relay/doctor/report.py)."""
