using System.Globalization;

namespace Lifeline.Testing.Internal;

/// <summary>
/// A detached shell process that outlives the test process and, once it is gone, stops the servers it
/// owned and deletes their directories. Test hosts are often killed right after the run (VSTest does
/// so within a fraction of a second), which cuts ProcessExit handlers short; a crash or SIGKILL skips
/// them entirely. The watchdog covers all of these.
/// </summary>
internal static class CleanupWatchdog
{
    // $1 = owner pid, $2.. = directories that hold lifeline-pg-* / lifeline-redis-* server directories.
    private const string Script = """
        exec </dev/null >/dev/null 2>&1
        owner="$1"; shift
        alive() { # zombies are dead: nobody may reap them in a container without an init
          s=$(sed -n 's/.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
          [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
        }
        while alive "$owner"; do sleep 1; done
        stop() { # pid signal name
          [ -n "$1" ] && alive "$1" || return 0
          tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q "$3" || return 0
          kill -"$2" "$1" 2>/dev/null
          i=0
          while alive "$1" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
          kill -KILL "$1" 2>/dev/null || true
        }
        for root in "$@"; do
          for dir in "$root"/lifeline-pg-* "$root"/lifeline-redis-*; do
            [ -f "$dir/owner.pid" ] || continue
            read -r pid rest < "$dir/owner.pid" || true
            [ "$pid" = "$owner" ] || continue
            if [ -f "$dir/data/postmaster.pid" ]; then read -r p < "$dir/data/postmaster.pid" || true; stop "$p" QUIT postgres; fi
            if [ -f "$dir/redis.pid" ]; then read -r p < "$dir/redis.pid" || true; stop "$p" TERM redis; fi
            rm -rf "$dir"
          done
        done
        """;

    private static int s_started;

    public static void EnsureStarted()
    {
        if (Interlocked.Exchange(ref s_started, 1) != 0 || !File.Exists("/bin/sh"))
        {
            return;
        }

        var roots = new HashSet<string>(StringComparer.Ordinal) { "/tmp", Path.GetTempPath().TrimEnd('/') };
        var setsid = File.Exists("/usr/bin/setsid") ? "/usr/bin/setsid" : null;
        string[] command = ["/bin/sh", "-c", Script, "lifeline-cleanup-watchdog", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), .. roots];

        // setsid: a new session, so Ctrl+C or a killed process group of the test run does not take it down too.
        var startInfo = setsid is null
            ? ChildProcess.StartInfo(command[0], command[1..])
            : ChildProcess.StartInfo(setsid, command);
        startInfo.RedirectStandardInput = true;
        startInfo.WorkingDirectory = "/";
        try
        {
            using var process = ChildProcess.Start(startInfo, new OutputLog(maxLines: 20));
            process.StandardInput.Close();
        }
        catch (InvalidOperationException)
        {
            // Without the watchdog, ProcessExit and the next run's orphan sweep still clean up.
        }
    }
}
