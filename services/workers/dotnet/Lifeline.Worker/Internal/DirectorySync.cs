using System.Runtime.InteropServices;

namespace Lifeline.Worker.Internal;

/// <summary>
/// fsync of a directory, so a file created, renamed or deleted in it stays so after a crash of the machine (fsync of
/// the file alone keeps its bytes, not its name). Linux and macOS; a no-op elsewhere and when the call fails.
/// </summary>
internal static class DirectorySync
{
    private const int ReadOnly = 0; // O_RDONLY

    public static void Flush(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return;
        }

        try
        {
            var descriptor = Open(directory, ReadOnly);
            if (descriptor < 0)
            {
                return;
            }

            try
            {
                _ = Fsync(descriptor);
            }
            finally
            {
                _ = Close(descriptor);
            }
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc to call: the file's own fsync is what there is.
        }
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int Fsync(int descriptor);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    private static extern int Close(int descriptor);
}
