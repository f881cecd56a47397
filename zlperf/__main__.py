from zlperf.cli import main

raise SystemExit(main())
