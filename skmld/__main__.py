from skmld.cli import main

raise SystemExit(main())
