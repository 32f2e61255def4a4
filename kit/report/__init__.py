"""The reporter (crcr_report.py), its GitHub Action (action.yml) and Buildkite wrapper."""
