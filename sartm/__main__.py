from sartm.cli import main

main()
