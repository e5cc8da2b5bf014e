"""The container harness: `make test-container` (run.sh and the scripts it runs) builds and
drives the image; test_deploy.py checks the deploy files in the ordinary test run."""
