namespace Lifeline.Testing;

/// <summary>Where the repository's built programs are, for tests that run one as a separate process.</summary>
public static class BuiltAssemblies
{
    private static readonly Lazy<string> Root = new(FindRepositoryRoot);

    /// <summary>The folder holding <c>Lifeline.slnx</c>.</summary>
    public static string RepositoryRoot => Root.Value;

    /// <summary>The built <c>&lt;assemblyName&gt;.dll</c> of a project folder (Release first, then Debug).</summary>
    public static string Find(string projectDirectory, string assemblyName)
    {
        foreach (var configuration in new[] { "Release", "Debug" })
        {
            var path = Path.Combine(RepositoryRoot, projectDirectory, "bin", configuration, "net10.0", assemblyName + ".dll");
            if (File.Exists(path))
            {
                return path;
            }
        }

        throw new InvalidOperationException(
            $"{assemblyName}.dll is not built under {projectDirectory}/bin/(Release|Debug)/net10.0; run `dotnet build Lifeline.slnx -c Release` first.");
    }

    /// <summary>The dotnet host running the tests (<c>DOTNET_HOST_PATH</c>), else <c>dotnet</c> from PATH.</summary>
    public static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Lifeline.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"Lifeline.slnx not found above {AppContext.BaseDirectory}.");
    }
}
