from modeltui.cli import main

raise SystemExit(main())
