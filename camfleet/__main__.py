from camfleet.cli import main

main()
