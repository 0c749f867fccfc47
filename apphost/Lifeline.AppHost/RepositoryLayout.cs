using Lifeline.AppHost.Model;

namespace Lifeline.AppHost;

/// <summary>Where the repository, the built services and the runtime state (<c>.lifeline/</c>) are.</summary>
internal sealed class RepositoryLayout
{
    private const string SolutionFile = "Lifeline.slnx";

    private RepositoryLayout(string root, string configuration, string targetFramework, string dataDirectory)
    {
        Root = root;
        Configuration = configuration;
        TargetFramework = targetFramework;
        DataDirectory = dataDirectory;
    }

    public string Root { get; }

    /// <summary>The build configuration the apphost itself was built in (normally Release); services are run from the same.</summary>
    public string Configuration { get; }

    public string TargetFramework { get; }

    /// <summary><c>&lt;repo&gt;/.lifeline</c> unless <c>--data-dir</c> says otherwise.</summary>
    public string DataDirectory { get; }

    public string PostgresDirectory => Path.Combine(DataDirectory, "postgres");

    public string RedisDirectory => Path.Combine(DataDirectory, "redis");

    /// <summary>Pid files of the processes the apphost started, to stop leftovers of an apphost that was killed.</summary>
    public string RunDirectory => Path.Combine(DataDirectory, "run");

    public string SecretsFile => Path.Combine(DataDirectory, "secrets.json");

    /// <summary>The gateway's URLs and development API keys, for tools and workers (mode 0600).</summary>
    public string CredentialsFile => Path.Combine(DataDirectory, "credentials.json");

    public static RepositoryLayout Locate(string? dataDirectory)
    {
        var baseDirectory = AppContext.BaseDirectory;
        var root = FindUpwards(baseDirectory) ?? FindUpwards(Environment.CurrentDirectory)
            ?? throw new AppHostException($"Could not find {SolutionFile} above {baseDirectory} or {Environment.CurrentDirectory}.");

        // …/bin/<configuration>/<tfm>/ when run from a build output; otherwise assume Release.
        var tfmDirectory = new DirectoryInfo(baseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var (configuration, tfm) = tfmDirectory.Parent?.Parent?.Name == "bin"
            ? (tfmDirectory.Parent.Name, tfmDirectory.Name)
            : ("Release", "net10.0");

        var data = Path.GetFullPath(dataDirectory ?? Path.Combine(root, ".lifeline"));
        return new RepositoryLayout(root, configuration, tfm, data);
    }

    public string AssemblyPath(ServiceDefinition service)
    {
        var project = Path.Combine(Root, service.Project);
        return Path.Combine(
            Path.GetDirectoryName(project)!, "bin", Configuration, TargetFramework, Path.GetFileNameWithoutExtension(project) + ".dll");
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
