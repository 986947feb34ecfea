from cxredge.cli.main import main

main()
