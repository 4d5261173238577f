from lgrpo_bench.cli import main

main()
