"""The pack's recipe folder (zlperf lists every *.yaml file here as ``acme:NAME``)."""
