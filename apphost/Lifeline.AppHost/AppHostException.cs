namespace Lifeline.AppHost;

/// <summary>A problem the apphost reports as one message and exits on (bad configuration, a port in use, a failed start).</summary>
internal sealed class AppHostException : Exception
{
    public AppHostException(string message) : base(message)
    {
    }

    public AppHostException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
