"""The commands, one module per noun (CLI.md's list), each a Click group or a few commands.

main.py's `COMMANDS` names the module of each, and only the module of the command being run is
imported (`landfall --help` and completion import them all). A command is a
function under `@runs` (context.py): it gets the `Run`, calls the API, and either prints the
API's JSON (`-o json`) or draws it for people (output.py). Nothing here catches errors: a
`CliError` becomes its message and exit code in `runs`, and Click's usage errors exit 2.
"""
