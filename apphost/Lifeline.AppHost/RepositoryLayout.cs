namespace Lifeline.AppHost;

/// <summary>Where the repository and the suite's runtime state (<c>.lifeline/</c> by default) are.</summary>
internal sealed class RepositoryLayout
{
    private const string SolutionFile = "Lifeline.slnx";

    private RepositoryLayout(string root, string dataDirectory)
    {
        Root = root;
        DataDirectory = dataDirectory;
    }

    public string Root { get; }

    /// <summary><c>&lt;repo&gt;/.lifeline</c> unless <c>--data-dir</c> says otherwise.</summary>
    public string DataDirectory { get; }

    public string PostgresDirectory => Path.Combine(DataDirectory, "postgres");

    public string RedisDirectory => Path.Combine(DataDirectory, "redis");

    public string BackupDirectory => Path.Combine(DataDirectory, "backups");

    public string SecretsFile => Path.Combine(DataDirectory, "secrets.json");

    /// <summary>The gateway's URLs and development API keys, for tools, workers and tests (mode 0600).</summary>
    public string CredentialsFile => Path.Combine(DataDirectory, "credentials.json");

    /// <param name="appHostDirectory">The AppHost project's directory (Aspire's <c>AppHostDirectory</c>).</param>
    /// <param name="dataDirectory">--data-dir, if given.</param>
    public static RepositoryLayout Locate(string appHostDirectory, string? dataDirectory)
    {
        var root = FindUpwards(appHostDirectory)
            ?? throw new AppHostException($"Could not find {SolutionFile} above {appHostDirectory}.");
        var data = Path.GetFullPath(dataDirectory ?? Path.Combine(root, ".lifeline"));
        Directory.CreateDirectory(data);
        // The postgres OS user must be able to pass through to <data>/postgres; secrets.json itself is 0600.
        File.SetUnixFileMode(data, File.GetUnixFileMode(data) | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        return new RepositoryLayout(root, data);
    }

    private static string? FindUpwards(string start)
    {
        for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, SolutionFile)))
            {
                return directory.FullName;
            }
        }

        return null;
    }
}
