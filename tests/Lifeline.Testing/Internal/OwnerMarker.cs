using Lifeline.Processes;
using System.Globalization;

namespace Lifeline.Testing.Internal;

/// <summary>
/// Records which test process owns a server's temp directory, so a later run can recognise and remove
/// servers left behind by a run that crashed or was killed before it could clean up.
/// </summary>
internal static class OwnerMarker
{
    private const string FileName = "owner.pid";

    /// <summary>Directories without a marker are left alone this long: their creator may be about to write it.</summary>
    private static readonly TimeSpan UnmarkedGrace = TimeSpan.FromMinutes(10);

    public static void Write(string directory)
    {
        // Written aside and renamed into place: another test process sweeping for orphans must never read
        // a half-written marker (an empty file once made a parallel run delete a live server's directory).
        var pid = Environment.ProcessId;
        var start = UnixProcess.StartTime(pid);
        var partial = Path.Combine(directory, FileName + ".partial");
        File.WriteAllText(partial, string.Create(CultureInfo.InvariantCulture, $"{pid} {start}\n"));
        File.Move(partial, Path.Combine(directory, FileName), overwrite: true);
    }

    /// <summary>Temp directories matching <paramref name="searchPattern"/> whose owning test process is gone.</summary>
    public static IEnumerable<string> FindOrphans(string root, string searchPattern)
    {
        string[] candidates;
        try
        {
            candidates = Directory.GetDirectories(root, searchPattern);
        }
        catch (IOException)
        {
            yield break;
        }
        catch (UnauthorizedAccessException)
        {
            yield break;
        }

        foreach (var directory in candidates)
        {
            if (IsOrphan(directory))
            {
                yield return directory;
            }
        }
    }

    private static bool IsOrphan(string directory)
    {
        try
        {
            var marker = Path.Combine(directory, FileName);
            if (!File.Exists(marker))
            {
                return DateTime.UtcNow - Directory.GetCreationTimeUtc(directory) > UnmarkedGrace;
            }

            var parts = File.ReadAllText(marker).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (parts.Length == 0 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid))
            {
                // Unreadable: an old marker is debris, a fresh one may be a writer (of an older harness) mid-write.
                return DateTime.UtcNow - File.GetLastWriteTimeUtc(marker) > UnmarkedGrace;
            }

            long? start = parts.Length > 1 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var s) ? s : null;
            return pid != Environment.ProcessId && !UnixProcess.IsAlive(pid, start);
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Best-effort recursive delete; a directory another user owns or a racing cleaner removed is not an error.</summary>
    public static void DeleteDirectory(string directory)
    {
        for (var attempt = 0; attempt < 5; attempt++)
        {
            try
            {
                if (Directory.Exists(directory))
                {
                    Directory.Delete(directory, recursive: true);
                }

                return;
            }
            catch (DirectoryNotFoundException)
            {
                return;
            }
            catch (UnauthorizedAccessException)
            {
                return;
            }
            catch (IOException)
            {
                Thread.Sleep(100);
            }
        }
    }
}
