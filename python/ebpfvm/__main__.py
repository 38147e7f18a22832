from ebpfvm.cli import main

raise SystemExit(main())
