"""The shared contracts every concern uses: the run folder's layout, atomic writes, the machine, the allocator, the CLI error policy."""
