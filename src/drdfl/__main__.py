from drdfl.cli import main

main()
