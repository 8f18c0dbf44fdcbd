"""Error pages: problem+json under /api/, HTML elsewhere."""

from django.shortcuts import render

from loyaltysms.problems import problem_json_response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    if _is_api(request):
        return problem_json_response(404, "No such resource.")
    return render(request, "404.html", status=404)


def server_error(request):
    if _is_api(request):
        return problem_json_response(500, "Something went wrong on our side; it has been logged.")
    return render(request, "500.html", status=500)
