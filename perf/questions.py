"""Questions about the Python 3.11 library reference (Debian's python3.11-doc), written by hand for the benchmarks.

Each has the page(s) that answer it (paths under library/) and, for the cache benchmark, paraphrases a visitor
might type instead. Worded as a user would ask, not in the documentation's own words where that was possible.
"""

from __future__ import annotations

QUESTIONS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "How do I parse command line options and flags in my script?",
        ("argparse.html", "optparse.html", "getopt.html"),
        ("How can I read command-line arguments and options?", "how do i parse command line flags in a script"),
    ),
    (
        "How can I run another program and capture what it prints?",
        ("subprocess.html",),
        ("How do I start an external command and get its output?", "run a program and capture its output"),
    ),
    (
        "How do I read and write CSV files?",
        ("csv.html",),
        ("How can I read and write comma separated values files?", "how to read and write csv files"),
    ),
    (
        "How do I serialize a Python object to JSON text?",
        ("json.html",),
        ("How can I convert Python objects into JSON?", "how do i serialize an object to json"),
    ),
    (
        "What is the way to generate a random number between two integers?",
        ("random.html", "secrets.html"),
        ("How do I get a random integer in a range?", "generate a random number between two integers"),
    ),
    (
        "How can I make secure tokens for password resets?",
        ("secrets.html",),
        ("How do I generate a cryptographically secure random token?", "make secure tokens for password reset"),
    ),
    (
        "How do I compute the SHA-256 hash of some bytes?",
        ("hashlib.html",),
        ("How can I calculate a sha256 digest?", "compute the sha-256 hash of bytes"),
    ),
    (
        "How can I check whether a file exists and join path components?",
        ("pathlib.html", "os.path.html"),
        ("How do I test if a path exists and build paths from parts?", "check whether a file exists and join paths"),
    ),
    (
        "How do I copy a whole directory tree?",
        ("shutil.html",),
        ("How can I recursively copy a folder?", "how do i copy a whole directory tree"),
    ),
    (
        "How do I create a temporary file that is deleted automatically?",
        ("tempfile.html",),
        ("How can I make a temp file that gets removed on close?", "create a temporary file deleted automatically"),
    ),
    (
        "How do I write log messages to a file with timestamps?",
        ("logging.html", "logging.handlers.html", "logging.config.html"),
        ("How can I log messages with the time into a file?", "write log messages to a file with timestamps"),
    ),
    (
        "How do I run several coroutines concurrently and wait for all of them?",
        ("asyncio-task.html",),
        ("How can I await many coroutines at the same time?", "run coroutines concurrently and wait for all"),
    ),
    (
        "How can I use a pool of threads to run functions in parallel?",
        ("concurrent.futures.html",),
        ("How do I run functions in parallel in a thread pool?", "use a pool of threads to run functions in parallel"),
    ),
    (
        "How do I share work between processes on several CPU cores?",
        ("multiprocessing.html", "concurrent.futures.html"),
        ("How can I use multiple CPU cores with separate processes?", "share work between processes on several cores"),
    ),
    (
        "How do I protect shared data from two threads writing at once?",
        ("threading.html",),
        ("How can I use a lock between threads?", "protect shared data from concurrent thread writes"),
    ),
    (
        "How do I match text against a regular expression and get groups?",
        ("re.html",),
        ("How can I use regex to extract groups from a string?", "match text against a regular expression"),
    ),
    (
        "How do I format dates and parse them from strings?",
        ("datetime.html", "time.html"),
        ("How can I turn a string into a date and back?", "format and parse dates from strings"),
    ),
    (
        "How do I work with time zones and UTC offsets?",
        ("datetime.html", "zoneinfo.html"),
        ("How can I convert times between time zones?", "work with time zones and utc offsets"),
    ),
    (
        "How can I count how often each item occurs in a list?",
        ("collections.html",),
        ("How do I count occurrences of elements?", "count how often each item occurs in a list"),
    ),
    (
        "What is a named tuple and how do I define one?",
        ("collections.html",),
        ("How can I create a tuple with named fields?", "what is a named tuple and how to define one"),
    ),
    (
        "How do I define a class that mostly holds data, with generated init and repr?",
        ("dataclasses.html",),
        ("How can I avoid writing __init__ for simple data classes?", "define a data class with generated init"),
    ),
    (
        "How do I make a function cache its results?",
        ("functools.html",),
        ("How can I memoize a function?", "how do i make a function cache its results"),
    ),
    (
        "How do I iterate over all combinations or permutations of a list?",
        ("itertools.html",),
        ("How can I get every permutation of some items?", "iterate over combinations or permutations"),
    ),
    (
        "How do I keep a list sorted while inserting items?",
        ("bisect.html",),
        ("How can I insert into a sorted list and keep it sorted?", "keep a list sorted while inserting"),
    ),
    (
        "How do I get the smallest items from a heap or priority queue?",
        ("heapq.html", "queue.html"),
        ("How can I implement a priority queue?", "get the smallest items from a heap"),
    ),
    (
        "How do I write unit tests and assert expected results?",
        ("unittest.html",),
        ("How can I create test cases for my code?", "write unit tests and assert expected results"),
    ),
    (
        "How do I replace a function with a fake object while testing?",
        ("unittest.mock.html", "unittest.mock-examples.html"),
        ("How can I mock a method in a test?", "replace a function with a fake object in tests"),
    ),
    (
        "How can I measure how long a small piece of code takes to run?",
        ("timeit.html", "time.html", "profile.html"),
        ("How do I time a code snippet?", "measure how long a small piece of code takes"),
    ),
    (
        "How do I find which functions of my program are slow?",
        ("profile.html", "tracemalloc.html"),
        ("How can I profile my program?", "find which functions of my program are slow"),
    ),
    (
        "How do I step through my program line by line in a debugger?",
        ("pdb.html",),
        ("How can I debug interactively and set breakpoints?", "step through my program in a debugger"),
    ),
    (
        "How do I store Python objects on disk and load them back later?",
        ("pickle.html", "shelve.html"),
        ("How can I persist objects to a file?", "store python objects on disk and load them later"),
    ),
    (
        "How do I use an SQLite database from Python?",
        ("sqlite3.html",),
        ("How can I run SQL queries on a local database file?", "use an sqlite database from python"),
    ),
    (
        "How do I compress a file with gzip?",
        ("gzip.html", "zlib.html"),
        ("How can I gzip some data?", "compress a file with gzip"),
    ),
    (
        "How do I create or extract a tar archive?",
        ("tarfile.html", "shutil.html"),
        ("How can I unpack a .tar.gz file?", "create or extract a tar archive"),
    ),
    (
        "How do I read a zip file's contents?",
        ("zipfile.html",),
        ("How can I open a zip archive and list its files?", "read a zip file's contents"),
    ),
    (
        "How do I download a web page over HTTP?",
        ("urllib.request.html", "http.client.html"),
        ("How can I fetch a URL?", "download a web page over http"),
    ),
    (
        "How do I split a URL into its parts and encode query strings?",
        ("urllib.parse.html",),
        ("How can I parse a URL and build a query string?", "split a url into parts and encode query strings"),
    ),
    (
        "How do I start a simple web server to share files from a folder?",
        ("http.server.html",),
        ("How can I serve the current directory over HTTP?", "simple web server to share files"),
    ),
    (
        "How do I open a TCP connection and send bytes?",
        ("socket.html", "asyncio-stream.html"),
        ("How can I connect a network socket to a server?", "open a tcp connection and send bytes"),
    ),
    (
        "How do I send an email from a script?",
        ("smtplib.html", "email.examples.html"),
        ("How can I send mail via SMTP?", "send an email from a script"),
    ),
    (
        "How do I read a config file in INI format?",
        ("configparser.html",),
        ("How can I parse an .ini configuration file?", "read a config file in ini format"),
    ),
    (
        "How do I load a TOML file?",
        ("tomllib.html",),
        ("How can I parse TOML configuration?", "how do i load a toml file"),
    ),
    (
        "How do I do exact decimal arithmetic for money?",
        ("decimal.html", "fractions.html"),
        ("How can I avoid floating point rounding errors with currency?", "exact decimal arithmetic for money"),
    ),
    (
        "How do I compute the mean, median and standard deviation of numbers?",
        ("statistics.html",),
        ("How can I get the average and median of a list?", "compute mean median and standard deviation"),
    ),
    (
        "How do I define a set of named constants as an enumeration?",
        ("enum.html",),
        ("How can I create an enum?", "define named constants as an enumeration"),
    ),
    (
        "How do I add type hints for a function that takes a list of strings?",
        ("typing.html",),
        ("How can I annotate function parameters with types?", "type hints for a function taking a list of strings"),
    ),
    (
        "How do I write a context manager for use in a with statement?",
        ("contextlib.html", "stdtypes.html"),
        ("How can I make my own with-statement helper?", "write a context manager for a with statement"),
    ),
    (
        "How do I get the source code or signature of a function at runtime?",
        ("inspect.html",),
        ("How can I inspect a function's parameters?", "get the signature of a function at runtime"),
    ),
    (
        "How do I create an isolated environment for installing packages?",
        ("venv.html",),
        ("How can I make a virtual environment?", "create an isolated environment for packages"),
    ),
    (
        "How do I generate a universally unique identifier?",
        ("uuid.html",),
        ("How can I create a UUID?", "generate a universally unique identifier"),
    ),
    (
        "How do I handle signals like SIGTERM in my program?",
        ("signal.html",),
        ("How can I catch Ctrl-C or a kill signal?", "handle signals like sigterm"),
    ),
    (
        "How do I encode binary data as base64 text?",
        ("base64.html", "binascii.html"),
        ("How can I base64-encode bytes?", "encode binary data as base64"),
    ),
    (
        "How do I pack numbers into bytes in a fixed binary layout?",
        ("struct.html",),
        ("How can I convert integers to a binary C struct?", "pack numbers into bytes in a binary layout"),
    ),
    (
        "How do I find files matching a wildcard pattern like *.txt?",
        ("glob.html", "fnmatch.html", "pathlib.html"),
        ("How can I list all files ending in .txt?", "find files matching a wildcard pattern"),
    ),
    (
        "How do I compare two texts and show the differences?",
        ("difflib.html",),
        ("How can I produce a diff between two strings?", "compare two texts and show differences"),
    ),
    (
        "How do I wrap long text to a fixed width?",
        ("textwrap.html",),
        ("How can I fill a paragraph to 70 columns?", "wrap long text to a fixed width"),
    ),
    (
        "How do I check an IP address or network range?",
        ("ipaddress.html",),
        ("How can I tell whether an IP is inside a subnet?", "check an ip address or network range"),
    ),
    (
        "How do I make a weak reference that does not keep an object alive?",
        ("weakref.html",),
        ("How can I reference an object without preventing garbage collection?", "make a weak reference"),
    ),
    (
        "How do I turn off a warning that a library emits?",
        ("warnings.html",),
        ("How can I suppress a DeprecationWarning?", "turn off a warning from a library"),
    ),
    (
        "How do I make an HTTPS connection with certificate verification?",
        ("ssl.html",),
        ("How can I use TLS with verified certificates?", "https connection with certificate verification"),
    ),
]

# Pairs of questions that look alike but need different answers: a cache that answers one with the other's
# answer is wrong. The cache benchmark counts such hits as wrong.
NEAR_MISSES: list[tuple[str, str]] = [
    ("How do I read a JSON file?", "How do I write a JSON file?"),
    ("How do I convert a string to a date?", "How do I convert a date to a string?"),
    ("How do I start a new thread?", "How do I start a new process?"),
    ("How do I delete a file?", "How do I delete a directory?"),
    ("How do I compress data with gzip?", "How do I decompress gzip data?"),
    ("How do I sort a list?", "How do I sort a dictionary by value?"),
    ("How do I open a file for reading?", "How do I open a file for appending?"),
    ("How do I get the current time in UTC?", "How do I get the current date in my local time zone?"),
    ("How do I encode a URL query string?", "How do I decode a URL query string?"),
    ("How do I make a deep copy of a list?", "How do I make a shallow copy of a list?"),
    ("How do I round a number down?", "How do I round a number up?"),
    ("How do I lock a thread?", "How do I lock a file?"),
    ("How do I upload a file over HTTP?", "How do I download a file over HTTP?"),
    ("How do I convert bytes to a string?", "How do I convert a string to bytes?"),
    ("How do I read environment variables?", "How do I set environment variables?"),
]

# Questions that name an identifier, as developers ask documentation sites: exact names (functions, constants,
# environment variables) are where full-text search helps a small embedding model most.
IDENTIFIERS: list[tuple[str, tuple[str, ...]]] = [
    ("What does os.EX_NOPERM mean?", ("os.html",)),
    ("When do I get ENOTEMPTY?", ("errno.html", "exceptions.html")),
    ("What arguments does shutil.copytree take?", ("shutil.html",)),
    ("What does PYTHONMALLOC do?", ("devmode.html", "sys.html")),
    ("How does insort_left work?", ("bisect.html",)),
    ("What does os.scandir return?", ("os.html",)),
    ("How do I use sys.getrecursionlimit?", ("sys.html",)),
    ("What is heapq.nsmallest for?", ("heapq.html",)),
    ("How do I use TemporaryDirectory?", ("tempfile.html",)),
    ("What does as_completed do?", ("concurrent.futures.html", "asyncio-task.html")),
    ("What does asyncio.shield protect against?", ("asyncio-task.html",)),
    ("How is zip_longest different from zip?", ("itertools.html",)),
    ("What is the maxsize of lru_cache?", ("functools.html",)),
    ("What does total_ordering need?", ("functools.html",)),
    ("What is a ChainMap?", ("collections.html",)),
    ("What is the resolution of time.monotonic_ns?", ("time.html",)),
    ("What formats does datetime.fromisoformat accept?", ("datetime.html",)),
    ("When should I use shlex.quote?", ("shlex.html",)),
    ("What does subprocess.check_output raise?", ("subprocess.html",)),
    ("How does urlencode handle sequences?", ("urllib.parse.html",)),
    ("What is an IPv4Network?", ("ipaddress.html",)),
    ("What is a TypedDict?", ("typing.html",)),
    ("What is ParamSpec used for?", ("typing.html",)),
    ("How do I use ExitStack?", ("contextlib.html",)),
    ("How does RotatingFileHandler decide to roll over?", ("logging.handlers.html",)),
    ("What keys does dictConfig expect?", ("logging.config.html",)),
    ("How do I use SIGALRM?", ("signal.html",)),
    ("How long is a token from token_urlsafe?", ("secrets.html",)),
    ("Why use hmac.compare_digest?", ("hmac.html", "secrets.html")),
    ("What is blake2b's digest size?", ("hashlib.html",)),
    ("Is uuid4 random?", ("uuid.html",)),
    ("How is fnmatchcase different from fnmatch?", ("fnmatch.html",)),
    ("What does unified_diff produce?", ("difflib.html",)),
    ("What does textwrap.dedent remove?", ("textwrap.html",)),
    ("When are WeakValueDictionary entries removed?", ("weakref.html",)),
    ("What does warnings.simplefilter do?", ("warnings.html",)),
]
